package phone_test

import (
	"errors"
	"os"
	"testing"

	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/phone"
)

// FuzzParse: any body parses or fails with a *normalize.ValidationError, never a panic.
func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile("testdata/transcript.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("{}"))
	f.Add([]byte(`{"events":[{"type":"message"}]}`))
	ch := phone.New(ingest.KeyCredential{Key: "k"})
	f.Fuzz(func(t *testing.T, body []byte) {
		_, err := ch.Parse(nil, body)
		var ve *normalize.ValidationError
		if err != nil && !errors.As(err, &ve) {
			t.Fatalf("error is not a ValidationError: %v", err)
		}
	})
}
