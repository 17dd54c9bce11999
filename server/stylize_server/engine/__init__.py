"""The TensorFlow engine: VGG-19, the loss terms, the compiled objective, exact
tiling, the optimizers, precision, colour and regions. The only package that
imports TensorFlow; serving reaches it through `job.port.EnginePort`."""

from stylize_server.engine.runner import Engine, RunHooks

__all__ = ["Engine", "RunHooks"]
