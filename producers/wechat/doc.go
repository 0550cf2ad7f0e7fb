// Package wechat is the WeChat official-account channel (公众号 消息推送):
// the XML message push, in plain-text mode or safe mode (安全模式,
// encrypted), served at /ingest/wechat by the ingest pipeline.
//
// The package holds what is the official account's own: its XML reader
// and its message types. The push protocol it shares with the mini-program
// (signatures, the timestamp window, the replay check, safe mode, the
// handshake and the answer) is package producers/internal/wxpush, whose
// Channel New returns with this package's format.
//
// # Authentication
//
// Every request, GET or POST, carries signature, timestamp and nonce query
// parameters; signature is Sign(token, timestamp, nonce), the hex SHA-1 of
// the three sorted and concatenated. It is compared in constant time. The
// timestamp must also be within wxpush.MaxClockSkew (default 5 minutes) of the
// clock. A signed GET is the server verification: Handshake echoes echostr
// verbatim, in either mode.
//
// The signature does not cover the body, so a captured URL could carry
// any body while its timestamp is in the window. Parse therefore keeps a
// replay check: each signed (timestamp, nonce) taken is remembered with
// the SHA-256 of its body until the timestamp leaves the window. The same
// URL with the same body is WeChat re-sending an unanswered push (up to
// three times, within about 15 seconds): it is read again and the pipeline
// answers success without producing it twice. The same URL with another
// body is refused with 401, in both modes. At most 200,000 URLs are
// remembered per channel; past that new pushes are refused (401) until
// old ones leave the window, rather than forgetting a nonce. The memory is
// per process: behind a load balancer, a replay to another instance is
// not caught, which safe mode makes moot (the body is signed). With
// wxpush.MaxClockSkew(0) the check remembers URLs for 5 minutes only.
//
// Safe mode is on when the credential has an EncodingAESKey (43
// characters, see package wxcrypt): then a push must carry
// encrypt_type=aes and msg_signature, the SHA-1 of the sorted token,
// timestamp, nonce and the body's Encrypt element; Encrypt is decrypted
// (AES-256-CBC, the app ID inside checked) and the message in it is read
// as a plain-text push. A plain-text push is refused (401), and so is any
// push whose msg_signature, ciphertext or app ID does not check out.
// Compatible mode (兼容模式) sends both copies with encrypt_type=aes: with
// a key only the ciphertext is read; without one only the plain copy.
// Switching an account over loses nothing: set it to compatible mode,
// configure the key, then set it to safe mode. A safe-mode push to a
// channel without a key is bad input (400, kept in the dead-letter topic,
// field Encrypt). Answers are the plain "success" in both modes.
//
// # Mapping
//
// Each push becomes one inbound MessageEvent from the customer (sender
// CUSTOMER, sender ID the openid), in conversation "wechat:<openid>", with
// OccurredAt = CreateTime and the identities wechat_openid (scoped by the
// app ID) and, when the push carries one, wechat_unionid:
//
//	MsgType            content   text          attachments / location  metadata
//	text               TEXT      Content
//	image              IMAGE                   PicUrl                  media_id
//	voice              VOICE     Recognition                           media_id, format
//	video, shortvideo  VIDEO                                           media_id, thumb_media_id
//	location           LOCATION                Location_X/_Y, Label    scale
//	link               LINK      Title                                 url, description
//	event              EVENT     Event         LOCATION: Latitude,     event, event_key, ticket,
//	                                           Longitude, Precision    qr_scene (subscribe, SCAN)
//
// Metadata always holds msg_type and to_user_name; every element no
// mapping reads (bizmsgmenuid, MenuId, a new event's fields, nested ones as
// scan_code_info.scan_type) is kept in metadata under its snake_case name.
// Voice and video carry no attachment: WeChat sends only a media ID, which
// the account downloads with its access token.
//
// The source message ID is MsgId; events have none, so theirs is
// wxpush.EventSourceID (FromUserName, CreateTime, Event, EventKey), as WeChat
// advises for deduplicating events. A re-sent push therefore gets the same
// message ID. Event types beyond subscribe, unsubscribe, SCAN, CLICK, VIEW
// and LOCATION are accepted generically; an unknown MsgType is refused.
// Subscribing does not produce a CustomerEvent; the message records it.
//
// # Validation
//
// Any bad input is an *normalize.ValidationError naming the XML element:
// missing ToUserName, FromUserName, CreateTime, MsgType, MsgId or the type's
// own fields; a CreateTime before 2012 or more than a day ahead; text over
// its bound (16384 characters for content, 4096 for URLs, 1024 for short
// values); a URL that is not http or https; duplicate elements; more than
// 32 unrecognised ones; malformed XML (naming the element it is in);
// invalid UTF-8, and character references to what is not an XML
// character, such as a UTF-16 surrogate (&#xD800;), which encoding/xml
// would silently turn into U+FFFD; and any DOCTYPE or entity declaration.
// In safe mode the same holds for the decrypted push; the dead letter
// keeps the body as received, encrypted.
package wechat
