package aperturepb

// Regenerate with protoc (Debian packages protobuf-compiler, libprotobuf-dev) and the Go
// plugins: go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
// google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//go:generate protoc -I. -I/usr/include --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative aperture_check.proto aperture_checkhttp.proto
