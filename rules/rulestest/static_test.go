package rulestest

import (
	"errors"
	"testing"

	"github.com/cgrulesengd/cgrulesengd/rules"
)

func TestStatic(t *testing.T) {
	s := NewStatic([]rules.User{{Name: "a", UID: 1}, {Name: "b", UID: 1}}, []rules.Group{{Name: "g", GID: 7}, {Name: "g", GID: 8}})
	if u, _ := s.UserByID(1); u.Name != "a" {
		t.Errorf("UserByID(1) = %+v, want the first entry", u)
	}
	if g, _ := s.GroupByName("g"); g.GID != 7 {
		t.Errorf("GroupByName = %+v, want the first entry", g)
	}
	if _, err := s.GroupByID(9); !errors.Is(err, rules.ErrNotFound) {
		t.Errorf("GroupByID(9): %v", err)
	}
	if _, err := s.UserByName("c"); !errors.Is(err, rules.ErrNotFound) {
		t.Errorf("UserByName(c): %v", err)
	}
}
