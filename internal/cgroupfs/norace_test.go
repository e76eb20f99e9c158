//go:build !race

package cgroupfs

const raceEnabled = false
