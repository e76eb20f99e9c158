package kernel_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// A reader goroutine that follows exec and credential changes. Not run: it
// needs the init namespaces (and CAP_NET_ADMIN before Linux 6.6).
func ExampleListen() {
	c, err := kernel.Listen(kernel.Config{Events: kernel.EventExec | kernel.EventUID | kernel.EventGID})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // from any goroutine; unblocks Read

	buf := make([]kernel.Event, 0, 64) // reused: Read does not allocate
	for {
		evs, err := c.Read(buf[:0])
		if errors.Is(err, kernel.ErrClosed) {
			return
		}
		if err != nil {
			log.Print(err)
			continue
		}
		for _, e := range evs {
			switch e.What {
			case kernel.EventOverflow:
				fmt.Println("events lost: rescan /proc")
			case kernel.EventExec:
				fmt.Println("exec", e.TGID)
			case kernel.EventUID:
				fmt.Println("uid", e.TGID, e.EUID)
			case kernel.EventGID:
				fmt.Println("gid", e.TGID, e.EGID)
			}
		}
	}
}
