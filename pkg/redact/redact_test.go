package redact

import "testing"

func TestMasks(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{Phone("+8613800138000"), "+86*********00"},
		{Phone("123"), "***"},
		{Email("li.na@example.com"), "l****@example.com"},
		{Email("nope"), "****"},
		{Identity("phone", "+8613800138000"), "+86*********00"},
		{Identity("wechat_openid", "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"), "o6_b…2M"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
