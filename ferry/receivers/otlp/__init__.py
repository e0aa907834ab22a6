"""OTLP receivers: HTTP (http.py) and gRPC (grpc_server.py), decoding via decode.py."""
