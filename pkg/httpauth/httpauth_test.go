package httpauth_test

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/omnisync/omnisync/pkg/httpauth"
)

func TestCheckBearer(t *testing.T) {
	for _, tc := range []struct {
		name, header, key string
		wantErr           string // "" means accepted
	}{
		{"right key", "Bearer k3y", "k3y", ""},
		{"no header", "", "k3y", "missing bearer key"},
		{"another scheme", "Basic k3y", "k3y", "missing bearer key"},
		{"wrong key", "Bearer k3Y", "k3y", "wrong bearer key"},
		{"a prefix of the key", "Bearer k3", "k3y", "wrong bearer key"},
		{"no key configured", "Bearer ", "", "wrong bearer key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			err := httpauth.CheckBearer(r, tc.key)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr == "":
			case !errors.Is(err, httpauth.ErrUnauthorized) || !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("got %v, want an error wrapping ErrUnauthorized saying %q", err, tc.wantErr)
			}
		})
	}
}
