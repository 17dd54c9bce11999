"""One schema: the CLI's option flags, the Python API's option names and the
request builder all derive from the proto's StylizeRequest descriptor
(stylize.schema.OPTIONS).

* every option of the descriptor has its flag (name, help, metavar, choices
  from the proto) and reaches its request field through the CLI and through
  `build_request`;
* a field added to the proto (a copy compiled here with one more option)
  appears in `stylize run --help`, in the CLI's parsed options and in
  `build_request` without editing the client.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import grpc_tools
import pytest

from stylize import build_request
from stylize.cli import build_parser
from stylize.cli.flags import FLAG_ALIASES, flag_options, option_values
from stylize.request import OPTION_NAMES
from stylize_api.schema import OPTIONS, Kind, OptionField, Scope
from stylize_api.v1 import stylize_pb2 as pb
from tests.support.images import png_bytes

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["run"]


def _sample(option: OptionField, tmp: pathlib.Path) -> tuple[str, object]:
    """(command-line text, the value the request field must then hold)."""
    if option.kind is Kind.ENUM:
        name, number = list(option.choices.items())[-1]
        return name.upper(), number  # any case
    if option.kind is Kind.LAYERS:
        return "relu3_1:0.5,relu1_1", [("relu3_1", 0.5), ("relu1_1", 1.0)]
    if option.kind is Kind.IMAGE:
        data = png_bytes(16, 16, seed=3)
        path = tmp / f"{option.name}.png"
        path.write_bytes(data)
        return str(path), data
    return {
        Kind.INT: ("48", 48),
        Kind.UINT64: ("7", 7),
        Kind.FLOAT: ("0.25", 0.25),
        Kind.STRING: ("#102030", "#102030"),
    }[option.kind]


def _field_value(request: pb.StylizeRequest, option: OptionField) -> object:
    value = getattr(request, option.name)
    if option.kind is Kind.LAYERS:
        return [(lw.layer, round(lw.weight if lw.HasField("weight") else 1.0, 6)) for lw in value]
    if option.kind is Kind.IMAGE:
        return value.data
    return value


def test_every_option_of_the_descriptor_is_a_flag_with_the_protos_help():
    run = _run_parser()
    flags = {s: a for a in run._actions for s in a.option_strings}
    options = [o for o in OPTIONS if o.scope in (Scope.ENGINE, Scope.DELIVERY)]
    assert len(options) >= 25  # the descriptor, not a short hand-written list
    for option in flag_options():
        action = flags[option.flag]
        assert action.dest == option.name and action.help == option.help, option.name
        if option.metavar:
            assert option.metavar in str(action.metavar), option.name
        if option.kind is Kind.ENUM:
            assert all(choice in action.metavar for choice in option.choices), option.name
        if option.kind is Kind.BOOL:
            assert "--no-" + option.flag[2:] in flags, option.name
    assert {o.name for o in flag_options()} >= {o.name for o in options}
    # The Python API's names are the fields' names (plus the style_weights convenience).
    assert {o.name for o in flag_options()} == OPTION_NAMES - {"style_weights"}
    assert set(FLAG_ALIASES) <= {o.name for o in flag_options()}


@pytest.mark.parametrize("option", flag_options(), ids=lambda o: o.name)
def test_each_flag_reaches_its_request_field(option: OptionField, tmp_path: pathlib.Path) -> None:
    run = _run_parser()
    if option.kind is Kind.BOOL:
        argv, expected = [option.flag], True
    else:
        text, expected = _sample(option, tmp_path)
        argv = [option.flag, text]
    args = run.parse_args(["c.png", "s.png", "-o", "o.png", *argv])
    options = option_values(args)
    assert set(options) == {option.name}
    request = build_request(b"content", b"style", **options)
    assert _field_value(request, option) == expected
    if option.has_presence:
        assert request.HasField(option.name)
    # Unset options stay unset: the server's defaults apply.
    bare = build_request(b"content", b"style")
    for other in OPTIONS:
        if other.has_presence and other.name not in ("content",):
            assert not bare.HasField(other.name), other.name
    if option.kind is Kind.BOOL:
        negated = option_values(run.parse_args(["c.png", "s.png", "-o", "o.png", "--no-" + option.flag[2:]]))
        assert build_request(b"c", b"s", **negated).HasField(option.name) and not getattr(
            build_request(b"c", b"s", **negated), option.name
        )


DUMMY_FIELDS = """
  optional float dummy_strength = 900 [(option) = {
    help: "strength of the dummy effect", scope: OPTION_SCOPE_ENGINE, metavar: "S"}];
  Pooling dummy_pooling = 901 [(option) = {help: "pooling of the dummy pass", scope: OPTION_SCOPE_DELIVERY}];
"""


def _compile_with_dummy_options(out: pathlib.Path) -> pathlib.Path:
    """proto/stylize/v1/stylize.proto with two more StylizeRequest fields, compiled to Python."""
    source = (ROOT / "proto" / "stylize" / "v1" / "stylize.proto").read_text()
    anchor = "message StylizeRequest {\n"
    assert anchor in source
    proto_dir = out / "proto"
    (proto_dir / "stylize" / "v1").mkdir(parents=True)
    (proto_dir / "stylize" / "v1" / "stylize.proto").write_text(source.replace(anchor, anchor + DUMMY_FIELDS, 1))
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    gen = out / "gen"
    gen.mkdir()
    # protoc in a process of its own: in this one, a library loaded by another test (OpenCV's
    # bundled protobuf) can clash with grpc_tools' and crash it.
    args = [f"-I{proto_dir}", f"-I{well_known}", f"--python_out={gen}", "stylize/v1/stylize.proto"]
    done = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return gen / "stylize" / "v1" / "stylize_pb2.py"


def test_a_new_proto_field_is_a_flag_and_a_keyword_without_a_client_edit(tmp_path: pathlib.Path) -> None:
    module = _compile_with_dummy_options(tmp_path)
    program = textwrap.dedent(
        f"""
        import contextlib, importlib.util, io, sys
        # The client as installed, reading the descriptor of the extended proto.
        spec = importlib.util.spec_from_file_location("stylize_api.v1.stylize_pb2", {str(module)!r})
        pb = importlib.util.module_from_spec(spec)
        sys.modules["stylize_api.v1.stylize_pb2"] = pb
        spec.loader.exec_module(pb)

        from stylize import build_request
        from stylize.cli import main
        from stylize.cli.flags import option_values
        from stylize.cli import build_parser

        help_text = io.StringIO()
        with contextlib.redirect_stdout(help_text), contextlib.suppress(SystemExit):
            main(["run", "--help"])
        text = help_text.getvalue()
        print("HELP", "--dummy-strength S" in text, "strength of the dummy effect" in text,
              "--dummy-pooling avg|max" in text)

        run = next(a for a in build_parser()._actions if a.dest == "command").choices["run"]
        args = run.parse_args(["c.png", "s.png", "-o", "o.png", "--dummy-strength", "0.5", "--dummy-pooling", "MAX"])
        options = option_values(args)
        request = build_request(b"c", b"s", **options)
        print("CLI", sorted(options), request.dummy_strength, request.dummy_pooling == pb.POOLING_MAX)
        request = build_request(b"c", b"s", dummy_strength=2.0, dummy_pooling="avg")
        print("API", request.dummy_strength, request.dummy_pooling == pb.POOLING_AVG)
        """
    )
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "HELP True True True",
        "CLI ['dummy_pooling', 'dummy_strength'] 0.5 True",
        "API 2.0 True",
    ]
