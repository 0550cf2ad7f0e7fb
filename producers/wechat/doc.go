// Package wechat is the WeChat official-account channel (公众号 消息推送):
// the XML message push in plain-text mode, served at /ingest/wechat by the
// ingest pipeline.
//
// # Authentication
//
// Every request, GET or POST, carries signature, timestamp and nonce query
// parameters; signature is Sign(token, timestamp, nonce), the hex SHA-1 of
// the three sorted and concatenated. It is compared in constant time. The
// timestamp must also be within MaxClockSkew (default 5 minutes) of the
// clock: in plain-text mode the signature does not cover the body, so the
// window bounds how long a captured URL can be replayed, and anything
// replayed inside it maps to the same source IDs and is absorbed
// downstream. WeChat's own re-sends come within about 15 seconds. A signed
// GET is the server verification: Handshake echoes echostr verbatim.
// Safe (encrypted) mode is not supported; compatible mode works, its
// ciphertext is ignored.
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
// EventSourceID (FromUserName, CreateTime, Event, EventKey), as WeChat
// advises for deduplicating events. A re-sent push therefore gets the same
// message ID. Event types beyond subscribe, unsubscribe, SCAN, CLICK, VIEW
// and LOCATION are accepted generically; an unknown MsgType is refused.
// Subscribing does not produce a CustomerEvent; the message records it.
//
// # Validation
//
// Any bad input is an *ingest.ValidationError naming the XML element:
// missing ToUserName, FromUserName, CreateTime, MsgType, MsgId or the type's
// own fields; a CreateTime before 2012 or more than a day ahead; text over
// its bound (16384 characters for content, 4096 for URLs, 1024 for short
// values); a URL that is not http or https; duplicate elements; more than
// 32 unrecognised ones; malformed XML; and any DOCTYPE or entity
// declaration.
package wechat
