package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestResponseCache: within the ttl a scrape of a kind already answered
// gets the same bytes without calling the handler; another kind (Accept,
// Accept-Encoding, query) calls it; after the ttl it is called again; at
// most maxKinds answers are kept, and a failed answer is never kept.
func TestResponseCache(t *testing.T) {
	calls := 0
	status := http.StatusOK
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		fmt.Fprintf(w, "answer %d for %q", calls, r.Header.Get("Accept-Encoding"))
	})
	c := newResponseCache(h, 100*time.Millisecond)
	get := func(enc, query string) (int, string, http.Header) {
		r := httptest.NewRequest("GET", "/metrics?"+query, nil)
		if enc != "" {
			r.Header.Set("Accept-Encoding", enc)
		}
		w := httptest.NewRecorder()
		c.ServeHTTP(w, r)
		return w.Code, w.Body.String(), w.Header()
	}
	for i := 0; i < 5; i++ {
		code, body, hdr := get("gzip", "")
		if code != 200 || body != `answer 1 for "gzip"` || hdr.Get("Content-Type") != "text/plain" || hdr.Get("Content-Length") != fmt.Sprint(len(body)) {
			t.Fatalf("scrape %d: %d %q %v", i, code, body, hdr)
		}
	}
	if calls != 1 {
		t.Errorf("5 scrapes within the ttl called the handler %d times, want 1", calls)
	}
	if _, body, _ := get("", ""); body != `answer 2 for ""` {
		t.Errorf("another Accept-Encoding got %q", body)
	}
	for i := 0; i < 6; i++ {
		get("", fmt.Sprintf("name[]=x%d", i))
	}
	if n := len(c.answers); n != maxKinds {
		t.Errorf("%d answers kept, want the bound %d", n, maxKinds)
	}
	time.Sleep(120 * time.Millisecond)
	before := calls
	if _, body, _ := get("gzip", ""); !strings.HasPrefix(body, fmt.Sprintf("answer %d", before+1)) {
		t.Errorf("after the ttl: %q, want a new answer", body)
	}
	status = http.StatusInternalServerError
	get("x", "")
	get("x", "")
	if calls != before+3 {
		t.Errorf("failed answers were kept: %d calls, want %d", calls, before+3)
	}
}
