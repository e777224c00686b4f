package controlpointpb

// Regenerate with `make generate` from the repository root: it installs the pinned Go
// plugins (protoc-gen-go v1.36.12, protoc-gen-go-grpc v1.6.2) into .bin and runs this
// directive with protoc (Debian packages protobuf-compiler, libprotobuf-dev, installed by
// `make deps`). `make generate-check`, part of `make lint`, fails if the committed code differs.
//go:generate protoc -I. -I/usr/include --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative flowcontrol.proto
