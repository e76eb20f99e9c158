package classify

import (
	"fmt"
	"testing"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
)

func TestDestSet(t *testing.T) {
	var s destSet
	h1 := &cgroupfs.Hierarchy{Version: cgroupfs.V1, Controllers: []string{"cpu"}}
	h2 := &cgroupfs.Hierarchy{Version: cgroupfs.V2}
	if l, n := s.list(10); len(l) != 0 || n != 0 {
		t.Fatalf("empty set lists %v, %d", l, n)
	}
	s.add(h1, "/a")
	s.add(h1, "/a")
	s.add(h2, "/a")
	s.add(h1, "/b")
	if _, n := s.list(10); n != 3 {
		t.Fatalf("%d destinations, want 3", n)
	}
	if l, n := s.list(2); len(l) != 2 || n != 3 {
		t.Errorf("list(2) = %d of %d, want 2 of 3", len(l), n)
	}
	s.remove(Destination{h1, "/a"})
	s.remove(Destination{h1, "/nothing"})
	l, n := s.list(10)
	if n != 2 {
		t.Fatalf("%d after remove, want 2", n)
	}
	for _, d := range l {
		if d == (Destination{h1, "/a"}) {
			t.Errorf("removed destination still listed")
		}
	}
	if a := testing.AllocsPerRun(100, func() { s.add(h1, "/b") }); a != 0 {
		t.Errorf("adding a known destination allocates %v times", a)
	}
	dropped := 0
	for i := 0; i < maxDestinations+10; i++ {
		if !s.add(h2, fmt.Sprintf("/u%d", i)) {
			dropped++
		}
	}
	if _, n := s.list(0); n != maxDestinations || dropped != 12 {
		t.Errorf("%d destinations and %d dropped, want the bound %d and 12", n, dropped, maxDestinations)
	}
}
