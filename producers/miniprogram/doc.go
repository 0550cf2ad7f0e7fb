// Package miniprogram is the WeChat mini-program channel: the
// customer-service message push (小程序 客服消息推送) in the JSON data
// format, served at /ingest/miniprogram by the ingest pipeline.
//
// The package holds what is the mini-program's own: its JSON reader and
// its message types. The push protocol is the official account's, in
// package producers/internal/wxpush, whose Channel New returns with this
// package's format.
//
// Authentication is the official account's (package wechat): signature,
// timestamp and nonce query parameters, wxpush.Sign(token, timestamp, nonce),
// compared in constant time, with the timestamp within wxpush.MaxClockSkew
// (default 5 minutes) of the clock; a signed GET is the server
// verification and Handshake echoes echostr. The replay check is the
// same: a signed URL taken once may come again only with the same body
// (WeChat's re-sends); with another body it is refused with 401.
//
// Safe mode (encrypted pushes) is on when the credential has an
// EncodingAESKey, exactly as for the official account, the body being
// {"ToUserName": "…", "Encrypt": "…"} and msg_signature covering Encrypt;
// plain-text pushes are then refused with 401. The decrypted message is
// read by the same reader as a plain-text body, so every check below
// applies to it.
//
// Each push becomes one inbound MessageEvent from the customer (sender
// CUSTOMER, sender ID the openid), in conversation "miniprogram:<openid>",
// with OccurredAt = CreateTime and the identities miniprogram_openid
// (scoped by the app ID) and, when the push carries UnionId (or UnionID,
// unionid), wechat_unionid, which links the user to the same person on the
// official account:
//
//	MsgType          content  text     attachments  metadata
//	text             TEXT     Content
//	image            IMAGE             PicUrl       media_id
//	miniprogrampage  LINK     Title                 page_path, app_id, thumb_url, thumb_media_id
//	event            EVENT    Event                 event, session_from (user_enter_tempsession)
//
// Metadata always holds msg_type and to_user_name; any key no mapping
// reads is kept in metadata under its snake_case name. The source message
// ID is MsgId (read as digits, never as a float: it exceeds 2^53), or for
// events, which have none, wxpush.EventSourceID(FromUserName, CreateTime,
// Event, SessionFrom); a re-sent push gets the same message ID. Event types
// other than user_enter_tempsession are accepted generically; an unknown
// MsgType is refused.
//
// Any bad input is an *normalize.ValidationError naming the JSON key: the
// body not one JSON object (an XML body is told to switch the data format
// to JSON), duplicate keys, missing ToUserName, FromUserName, CreateTime,
// MsgType, MsgId or the type's own fields, a value of the wrong JSON type,
// a CreateTime before 2012 or more than a day ahead, text over its bound
// (16384 characters for content, 4096 for URLs and page paths, 1024 for
// short values), a URL that is not http or https, or more than 32
// unrecognised keys.
package miniprogram
