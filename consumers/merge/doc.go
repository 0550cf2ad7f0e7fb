// Package merge is omnisync's merge contract (docs/design.md, section 3):
// it folds customer events and messages into one versioned customer Record.
//
// The package is pure: Apply and ApplyMessage read no clock, draw no random
// numbers, do no I/O and start no goroutines. The record they return depends
// only on the record, the event and the Policy they are given, so live
// processing and a replay of the same log produce records with the same
// CanonicalHash.
//
// # Two topics, one record
//
// A customer's events come in one order (their topic's partition), its
// messages in another, and how the two interleave depends on how a
// materializer happened to poll them. The record is therefore a function
// of the sequence of customer events and of the messages, whatever the
// interleaving: what messages bring is kept apart (Record.Sightings and
// the last contact, each a maximum over the messages newer than the
// tombstone), customer events never look at it, and the version counts
// every message (see Versions). Folding all events first and then all
// messages, or any interleaving that keeps each topic's order, gives the
// same CanonicalHash.
//
// # Stamps and registers
//
// Every write is stamped with (occurred_at, event_id), ordered by time and
// then by ID (Stamp.After). Each profile field is a last-write-wins Register;
// a write whose stamp is not After the register's is stale: it is ignored
// and counted in Outcome.Stale. Re-applying an event is therefore a no-op;
// re-applying a message changes only the version.
// A cleared field keeps a register holding JSON null, so an older write
// arriving late cannot bring the value back. Times are held as UTC
// milliseconds, the precision of Avro's timestamp-millis, so a record built
// from an in-memory event equals one built from the same event decoded from
// Kafka.
//
// Field names are the Avro names of the typed profile fields (name, phone,
// email, gender, birthday, address, vip_level, tags, id_number) and
// "attributes.<key>" for each attribute. Register values are canonical JSON
// text: strings for name, phone, email, id_number and attributes, the enum
// symbol for gender, "YYYY-MM-DD" for birthday, a number for vip_level, an
// array of strings for tags and an object with the Avro field names for
// address.
//
// # Key fields and conflicts
//
// The Policy names key fields (by default phone, email, id_number and
// attributes.order_no). A newer write to a key field that holds a different,
// non-null value overwrites it when it comes from the same channel and
// source, from a channel of higher authority, or from a channel of equal
// authority at least the conflict window after the current value. Otherwise
// (lower authority, or equal authority within the window) the current value
// stays and an open Conflict is added; the record NeedsReview while any
// conflict is open. A conflict's ID is derived from the customer, the field
// and the candidate event, so a re-delivered event never opens a second one;
// a new event proposing a value already awaiting review (or already
// rejected by KEEP_CURRENT) against the same current value opens none either.
//
// A write held back as a conflict is decided by its resolution only: the
// same event arriving again is absorbed whatever the field holds by then.
//
// RESOLVE events close an open conflict: KEEP_CURRENT leaves the field,
// TAKE_CANDIDATE and SET_VALUE write the value with the resolve event's
// channel and source, bypassing the authority rules. A resolution always
// takes effect: it writes with its own stamp when that is after the field's
// register, else with the register's time plus one millisecond and its own
// event ID. A register can be ahead of the agent's clock (producers accept
// occurred_at up to 24 h in the future), and an agent told 202 must not see
// the decision dropped as stale; the written stamp depends only on the
// record and the event, so a replay of the log writes the same one. The
// conflict's ResolvedAt stays the resolve event's occurred_at. Conflicts are
// closed by RESOLVE events only, and stay in the record, closed, until a
// DELETE.
//
// # Deletes
//
// A DELETE newer than the record's tombstone erases every field, identity
// and conflict customer events brought, whatever their stamps: a privacy
// request leaves none of the profile behind even when a channel's clock
// runs ahead. Of what messages brought it keeps what messages newer than
// the DELETE alone give: the sightings seen after it (verified only when
// seen verified after it) and the last contact when it is after it. A
// message newer than the DELETE is contact after the request, and folded
// before the DELETE or after it, it leaves the same record. Afterwards every
// event or message whose stamp is not After the tombstone is ignored; a
// newer one recreates the customer.
//
// # Customer merge
//
// A merge folds absorbed customer A into survivor S (docs/design.md,
// Customer merge), always from the greater customer ID to the smaller. The
// MERGE request, keyed by A, freezes A (Record.MergedInto) and emits the
// hand-off in Outcome.Emit: a MERGE keyed by S carrying A's record. The
// hand-off absorbs A into S field by field with the rules above (Absorb):
// the two registers of a field in stamp order, so a key field's
// disagreement opens a conflict, whichever side is newer; sightings and
// the last contact by the newer stamp. S keeps each
// absorbed snapshot (Record.Absorbed) and its own record (Record.Own),
// which S's later events update too. A frozen record still folds its own
// events, and emits a new hand-off on every change, of which S absorbs what
// changed. The UNMERGE request, keyed by S, gives S back its own record
// (with the other absorptions folded in again) and emits the release, an
// UNMERGE keyed by A, which unfreezes A. Events a fold emits carry the
// policy hash and are folded only under that policy; each is absorbed when
// it arrives again, so a materializer may emit them again after a crash or
// in a replay. A DELETE of a survivor, or of an absorbed customer after the
// merge, erases both.
//
// # Versions
//
// Record.Version grows by exactly one for every customer event that changed
// the record (what customer events brought: fields, their identities,
// conflicts, tombstone, merge bookkeeping) and never for one that did not,
// and by exactly one for every message folded for the customer, also one
// that changed nothing or that the tombstone erased: whether a message
// changes the record depends on the interleaving, how many there were does
// not. Record.UpdatedAt is the newest occurred_at of those events and
// messages, which is the newest of the events' and the last contact (an
// erased message is not newer than the tombstone). Stores upsert only
// newer versions; the materializer folds each record of the log once
// (docs/design.md, Exactly once in effect), so a re-delivered message,
// which would count again, never reaches a record.
package merge
