package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnisync/omnisync/consumers/store"
)

// testAccounts checks store.Accounts: create, duplicate, update, list,
// credentials and their revocation.
func testAccounts(t *testing.T, s store.Store) {
	as, ok := s.(store.Accounts)
	if !ok {
		t.Fatalf("%T does not implement store.Accounts", s)
	}
	created := time.Date(2026, 12, 1, 9, 30, 0, 123e6, time.UTC)
	ana := store.Account{Name: "ana", Role: "agent", PasswordHash: "$2a$10$x", CreatedAt: created}
	bo := store.Account{Name: "bo", Role: "viewer", CreatedAt: created.Add(time.Second)}
	for _, a := range []store.Account{bo, ana} {
		if err := as.CreateAccount(ctx, a); err != nil {
			t.Fatalf("CreateAccount(%s): %v", a.Name, err)
		}
	}
	if err := as.CreateAccount(ctx, store.Account{Name: "ana", Role: "admin", CreatedAt: created}); !errors.Is(err, store.ErrAccountExists) {
		t.Errorf("a second account ana: got %v, want ErrAccountExists", err)
	}
	if err := as.UpdateAccount(ctx, store.Account{Name: "nobody", Role: "agent"}); !errors.Is(err, store.ErrNoAccount) {
		t.Errorf("updating a missing account: got %v, want ErrNoAccount", err)
	}
	ana.Disabled, ana.Role = true, "admin"
	if err := as.UpdateAccount(ctx, ana); err != nil {
		t.Fatal(err)
	}
	got, ok, err := as.Account(ctx, "ana")
	if err != nil || !ok {
		t.Fatalf("Account(ana): %v, %v", ok, err)
	}
	if diff := cmp.Diff(ana, got); diff != "" {
		t.Errorf("Account(ana) (-want +got):\n%s", diff)
	}
	if _, ok, err := as.Account(ctx, "nobody"); ok || err != nil {
		t.Errorf("Account(nobody): %v, %v; want absent", ok, err)
	}
	list, err := as.ListAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.Account{ana, bo}, list); diff != "" {
		t.Errorf("ListAccounts (-want +got):\n%s", diff)
	}

	tok := store.Credential{ID: "tok1", Account: "bo", Kind: store.KindToken, SecretHash: "aa", CreatedAt: created}
	sess := store.Credential{ID: "ses1", Account: "bo", Kind: store.KindSession, SecretHash: "bb", CSRFHash: "cc",
		CreatedAt: created, ExpiresAt: created.Add(8 * time.Hour)}
	for _, c := range []store.Credential{tok, sess} {
		if err := as.AddCredential(ctx, c); err != nil {
			t.Fatalf("AddCredential(%s): %v", c.ID, err)
		}
	}
	if err := as.AddCredential(ctx, tok); err == nil {
		t.Error("a second credential tok1 was stored")
	}
	revoked := created.Add(time.Hour)
	if err := as.RevokeCredential(ctx, "tok1", revoked); err != nil {
		t.Fatal(err)
	}
	if err := as.RevokeCredential(ctx, "tok1", revoked.Add(time.Hour)); err != nil {
		t.Fatal(err) // revoking again keeps the first time
	}
	if err := as.RevokeCredential(ctx, "nothing", revoked); !errors.Is(err, store.ErrNoCredential) {
		t.Errorf("revoking a missing credential: got %v, want ErrNoCredential", err)
	}
	tok.RevokedAt = revoked
	for _, want := range []store.Credential{tok, sess} {
		got, ok, err := as.Credential(ctx, want.ID)
		if err != nil || !ok {
			t.Fatalf("Credential(%s): %v, %v", want.ID, ok, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Credential(%s) (-want +got):\n%s", want.ID, diff)
		}
	}
	tokens, err := as.Credentials(ctx, "bo", store.KindToken)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.Credential{tok}, tokens); diff != "" {
		t.Errorf("Credentials(bo, token) (-want +got):\n%s", diff)
	}
}
