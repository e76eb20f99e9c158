// Package unitname knows systemd's unit names: escaping any string (a user
// or process name) into a name component, the validity of slice and scope
// names, and the nesting of slices, in which a dash means "below":
// batch-john-doe.slice sits below batch-john.slice, itself below
// batch.slice, so a user john-doe must become batch-john\x2ddoe.slice.
//
// It is pure (no I/O, no D-Bus) so that the rules parser can validate and
// expand slice destinations with it, and the D-Bus placer (package systemd)
// name the units it creates, without the parser depending on D-Bus.
//
// The rules follow systemd 252's src/basic/unit-name.c: a unit name is at
// most 255 bytes of [A-Za-z0-9:_.\-] plus "\xNN" escapes, made of a prefix,
// a dot and a type suffix; a slice's prefix neither starts nor ends with a
// dash nor holds two in a row ("-.slice", the root slice, excepted); Escape
// is systemd-escape's (unit_name_escape): every byte outside
// [A-Za-z0-9:_.], the dash and backslash included, and a leading dot,
// become "\xNN".
//
// Privileges: none. Concurrency: every function is safe for concurrent use.
package unitname
