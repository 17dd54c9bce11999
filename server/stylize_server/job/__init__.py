"""TensorFlow-free values that cross the layers: options and their checks, the
plan of a job, the cost model and its device profiles, VGG-19 as numbers, the
result and progress types, errors, images as arrays, and the engine port.
Nothing here imports TensorFlow, grpc or the serving layer."""
