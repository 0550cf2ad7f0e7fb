package ingest

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
)

// CheckBearer checks the request's "Authorization: Bearer <key>" header
// against key in constant time.
func CheckBearer(r *http.Request, key string) error {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return fmt.Errorf("%w: missing bearer key", ErrUnauthorized)
	}
	if key == "" || subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
		return fmt.Errorf("%w: wrong bearer key", ErrUnauthorized)
	}
	return nil
}

// Credentials are the channels' secrets, as in omnisync dev's
// credentials.json. They come from configuration, never from code.
type Credentials struct {
	AdminToken string `json:"admin_token"`
	Channels   struct {
		Web         KeyCredential    `json:"web"`
		App         KeyCredential    `json:"app"`
		Phone       KeyCredential    `json:"phone"`
		WeChat      WeChatCredential `json:"wechat"`
		MiniProgram WeChatCredential `json:"miniprogram"`
	} `json:"channels"`
}

// KeyCredential is a channel's bearer key.
type KeyCredential struct {
	Key string `json:"key"`
}

// WeChatCredential is a WeChat account's app ID and the token its
// message-push signatures are made with.
type WeChatCredential struct {
	AppID string `json:"app_id"`
	Token string `json:"token"`
}
