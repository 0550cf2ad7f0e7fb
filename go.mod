module github.com/omnisync/omnisync

go 1.26.0

require (
	github.com/google/go-cmp v0.7.0
	github.com/linkedin/goavro/v2 v2.15.0
	github.com/twmb/franz-go/pkg/sr v1.8.0
)

require (
	github.com/golang/snappy v0.0.1 // indirect
	github.com/stretchr/testify v1.8.1 // indirect
)
