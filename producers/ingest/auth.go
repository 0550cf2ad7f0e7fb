package ingest

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/omnisync/omnisync/pkg/wxcrypt"
)

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
		// CRM maps each CRM source system's name to its bearer key.
		CRM map[string]KeyCredential `json:"crm,omitempty"`
	} `json:"channels"`
}

// KeyCredential is a channel's bearer key and, for the web and app
// channels, the identity secret the business's backend signs logins with
// (see SignClaim). Without an identity secret the channel accepts no
// verified login: every claim is unverified.
type KeyCredential struct {
	Key            string `json:"key"`
	IdentitySecret string `json:"identity_secret,omitempty"`
}

// WeChatCredential is a WeChat account's app ID, the token its
// message-push signatures are made with and, for safe mode (encrypted
// pushes), its EncodingAESKey: 43 characters; with one set, plain-text
// pushes are refused.
type WeChatCredential struct {
	AppID          string `json:"app_id"`
	Token          string `json:"token"`
	EncodingAESKey string `json:"encoding_aes_key,omitempty"`
}

// LoadCredentials reads credentials from a JSON file (when path is not
// empty), then lets the environment override each secret:
// OMNISYNC_WEB_KEY, OMNISYNC_APP_KEY, OMNISYNC_PHONE_KEY,
// OMNISYNC_WEB_IDENTITY_SECRET, OMNISYNC_APP_IDENTITY_SECRET,
// OMNISYNC_WECHAT_APP_ID, OMNISYNC_WECHAT_TOKEN,
// OMNISYNC_WECHAT_AES_KEY, OMNISYNC_MINIPROGRAM_APP_ID,
// OMNISYNC_MINIPROGRAM_TOKEN, OMNISYNC_MINIPROGRAM_AES_KEY,
// OMNISYNC_ADMIN_TOKEN, and OMNISYNC_CRM_KEYS (system=key pairs,
// comma-separated) adds or replaces CRM systems' keys. An EncodingAESKey that is not 43 base64
// characters is an error.
func LoadCredentials(path string) (Credentials, error) {
	var c Credentials
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("reading credentials: %w", err)
		}
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("credentials %s: %w", path, err)
		}
	}
	for env, dst := range map[string]*string{
		"OMNISYNC_WEB_KEY":             &c.Channels.Web.Key,
		"OMNISYNC_APP_KEY":             &c.Channels.App.Key,
		"OMNISYNC_PHONE_KEY":           &c.Channels.Phone.Key,
		"OMNISYNC_WEB_IDENTITY_SECRET": &c.Channels.Web.IdentitySecret,
		"OMNISYNC_APP_IDENTITY_SECRET": &c.Channels.App.IdentitySecret,
		"OMNISYNC_WECHAT_APP_ID":       &c.Channels.WeChat.AppID,
		"OMNISYNC_WECHAT_TOKEN":        &c.Channels.WeChat.Token,
		"OMNISYNC_WECHAT_AES_KEY":      &c.Channels.WeChat.EncodingAESKey,
		"OMNISYNC_MINIPROGRAM_APP_ID":  &c.Channels.MiniProgram.AppID,
		"OMNISYNC_MINIPROGRAM_TOKEN":   &c.Channels.MiniProgram.Token,
		"OMNISYNC_MINIPROGRAM_AES_KEY": &c.Channels.MiniProgram.EncodingAESKey,
		"OMNISYNC_ADMIN_TOKEN":         &c.AdminToken,
	} {
		if v := os.Getenv(env); v != "" {
			*dst = v
		}
	}
	if v := os.Getenv("OMNISYNC_CRM_KEYS"); v != "" {
		for _, pair := range strings.Split(v, ",") {
			system, key, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || system == "" || key == "" {
				return c, fmt.Errorf("OMNISYNC_CRM_KEYS: %q is not system=key", pair)
			}
			if c.Channels.CRM == nil {
				c.Channels.CRM = map[string]KeyCredential{}
			}
			c.Channels.CRM[system] = KeyCredential{Key: key}
		}
	}
	for name, key := range map[string]string{"wechat": c.Channels.WeChat.EncodingAESKey, "miniprogram": c.Channels.MiniProgram.EncodingAESKey} {
		if key == "" {
			continue
		}
		if _, err := wxcrypt.ParseKey(key); err != nil {
			return c, fmt.Errorf("credentials: channels.%s.encoding_aes_key: %w", name, err)
		}
	}
	return c, nil
}
