// Package api holds omnisync's OpenAPI description, embedded so tests (and
// later the server) use the same file.
package api

import _ "embed"

// OpenAPI is api/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
