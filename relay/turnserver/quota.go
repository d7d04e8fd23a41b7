package turnserver

import (
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Allocation quotas (Config.MaxAllocationsPerUser, Config.MaxAllocations).
// A call needs one allocation per peer that relays; a user's devices and
// ICE restarts need a few more.
const (
	DefaultMaxAllocationsPerUser = 16
	DefaultMaxAllocations        = 4096
)

// quota counts the live allocations per user (the alias of the REST
// credential) and in all, for pion/turn's QuotaHandler: an Allocate past
// either limit is answered 486 (Allocation Quota Reached).
type quota struct {
	perUser, total int
	refused        *prometheus.CounterVec // reason: user, total

	mu     sync.Mutex
	byUser map[string]int
	all    int
}

func newQuota(perUser, total int) *quota {
	if perUser <= 0 {
		perUser = DefaultMaxAllocationsPerUser
	}
	if total <= 0 {
		total = DefaultMaxAllocations
	}
	q := &quota{perUser: perUser, total: total, byUser: make(map[string]int),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_turn_quota_refused_total",
			Help: "TURN allocations refused by a quota, by which (user: the credential's alias has its maximum; total: the server has).",
		}, []string{"quota"})}
	q.refused.WithLabelValues("user")
	q.refused.WithLabelValues("total")
	return q
}

// allow is the QuotaHandler. Allocations are counted when created, so that
// a refused or failed Allocate costs nothing; Allocates handled at the same
// moment (several sockets, TCP) may overshoot a quota by a few.
func (q *quota) allow(user, _ string, _ net.Addr) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.all >= q.total:
		q.refused.WithLabelValues("total").Inc()
		return false
	case q.byUser[user] >= q.perUser:
		q.refused.WithLabelValues("user").Inc()
		return false
	}
	return true
}

func (q *quota) created(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.byUser[user]++
	q.all++
}

func (q *quota) deleted(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n := q.byUser[user]; n > 1 {
		q.byUser[user] = n - 1
	} else {
		delete(q.byUser, user)
	}
	if q.all > 0 {
		q.all--
	}
}
