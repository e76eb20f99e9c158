package metrics

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// cachedGatherer gathers at most once per ttl.
type cachedGatherer struct {
	g   prometheus.Gatherer
	ttl time.Duration

	mu  sync.Mutex
	at  time.Time
	mfs []*dto.MetricFamily
	err error
}

// Gather returns the last collection if it is younger than ttl. The
// families are shared by the scrapes it answers, which only read them.
func (c *cachedGatherer) Gather() ([]*dto.MetricFamily, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) >= c.ttl {
		c.mfs, c.err = c.g.Gather()
		c.at = time.Now()
	}
	return c.mfs, c.err
}

// responseCache answers repeated scrapes with the bytes of an earlier
// answer: within ttl of the first answer of a kind (the same Accept and
// Accept-Encoding headers and query), the same status, headers and body are
// written again, with no collection, encoding or compression. Scrapes are
// answered one at a time; a scrape that waits for another then finds its
// answer made. What it keeps is bounded: maxKinds answers of at most
// maxCachedBytes in all, dropped when ttl has passed; a scrape of another
// kind then is answered without being kept.
type responseCache struct {
	next http.Handler
	ttl  time.Duration

	mu      sync.Mutex
	at      time.Time // when the kept answers were made
	answers map[responseKey]*answer
	size    int
}

const (
	maxKinds       = 4
	maxCachedBytes = 8 << 20
)

type responseKey struct {
	accept, encoding, query string
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func newResponseCache(next http.Handler, ttl time.Duration) *responseCache {
	return &responseCache{next: next, ttl: ttl, answers: make(map[responseKey]*answer)}
}

func (c *responseCache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := responseKey{r.Header.Get("Accept"), r.Header.Get("Accept-Encoding"), r.URL.RawQuery}
	c.mu.Lock()
	if time.Since(c.at) >= c.ttl {
		clear(c.answers)
		c.size, c.at = 0, time.Now()
	}
	a := c.answers[key]
	if a == nil {
		rec := &recorder{header: make(http.Header), status: http.StatusOK}
		c.next.ServeHTTP(rec, r)
		a = &answer{status: rec.status, header: rec.header, body: rec.body.Bytes()}
		if a.status == http.StatusOK && len(c.answers) < maxKinds && c.size+len(a.body) <= maxCachedBytes {
			c.answers[key] = a
			c.size += len(a.body)
		}
	}
	c.mu.Unlock()
	h := w.Header()
	for k, v := range a.header {
		h[k] = v
	}
	h.Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// recorder keeps what a handler writes.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	return r.body.Write(p)
}
