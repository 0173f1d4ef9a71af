"""The Open Inference Protocol (KServe v2): `oip.proto` (ours) and the modules `make protos`
generates from it (`oip_pb2*.py`, committed; grpcio-tools 1.81, protobuf 6)."""
