// Package verify compares a store with the log, or with another store,
// customer by customer, and repairs a store from the log.
//
// A customer's canonical hash (CustomerHash) covers its record — fields
// with provenance, conflicts, identities, version, tombstone, last contact
// — and its messages by ID, so stores of either kind and a fresh fold of
// the log compare directly. AgainstLog folds the log up to the store's
// offsets, one partition at a time into a scratch SQLite file, and
// compares; Stores compares two stores; Repair writes the log's version of
// every customer a report found differing. `omnisync verify` is the
// command.
package verify
