"""The typed gRPC API `vision.v1.VisionService`: the public REST API, one RPC per route,
with messages instead of multipart forms and JSON. `vision.proto` is the contract; the
`vision_pb2*.py` modules are generated from it by `make protos` (committed; grpcio-tools 1.81,
protobuf 6) and `servicer.py` serves it in every gateway worker (service/api/grpc/server.py)."""
