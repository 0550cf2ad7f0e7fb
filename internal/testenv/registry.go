package testenv

import (
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/omnisync/omnisync/pkg/registry"
)

// Registry returns a schema-registry client: the registry
// OMNISYNC_TEST_REGISTRY names (make test runs omnisync's embedded registry
// beside the real Kafka, so every test package shares schema IDs on the
// shared topics), else an in-process fake for this test.
func Registry(t testing.TB) (*registry.Client, string) {
	t.Helper()
	url := os.Getenv("OMNISYNC_TEST_REGISTRY")
	if url == "" {
		fake := srfake.New()
		t.Cleanup(fake.Close)
		url = fake.URL()
	}
	c, err := registry.New(strings.Split(url, ","))
	if err != nil {
		t.Fatal(err)
	}
	return c, url
}
