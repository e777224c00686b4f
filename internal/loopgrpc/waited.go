//go:build linux

package loopgrpc

import "sync"

// Answers of calls that waited go back to their loop in batches: a
// call's goroutine queues its answer, and the first of a batch posts one
// function that gives the loop every answer queued meanwhile and then
// writes each connection's frames once — one write a connection for the
// answers a wake brings, not one an answer. Under load, when a Redis
// reply completes many calls at once, that is most of what answering a
// waiting call cost the loop.
type waitedAnswers struct {
	mu    sync.Mutex
	queue []waitedAnswer // guarded by mu

	spare []waitedAnswer // the loop's: the last batch's slice, emptied
	flush []*conn        // the loop's: connections with answers to write
}

type waitedAnswer struct {
	uc  *unaryCall
	out []byte
	err error
	buf *[]byte // out's memory, from answerBufs
}

// answered queues uc's answer for its loop (from the call's goroutine).
// Should the loop have stopped, the answer never goes: the calls queued
// have their contexts ended instead.
func (st *loopState) answered(uc *unaryCall, out []byte, err error, buf *[]byte) {
	w := &st.waited
	w.mu.Lock()
	first := len(w.queue) == 0
	w.queue = append(w.queue, waitedAnswer{uc, out, err, buf})
	w.mu.Unlock()
	if !first || st.l.Post(st.answerWaitedFn) {
		return
	}
	w.mu.Lock()
	q := w.queue
	w.queue = nil
	w.mu.Unlock()
	for _, a := range q {
		a.uc.cancel()
	}
}

// answerWaited gives the loop the answers queued, then writes the
// frames of each connection they went to.
func (st *loopState) answerWaited() {
	w := &st.waited
	w.mu.Lock()
	batch := w.queue
	w.queue = w.spare
	w.mu.Unlock()
	for i := range batch {
		a := &batch[i]
		if a.uc.waited(a.out, a.err) && !a.uc.c.toFlush {
			a.uc.c.toFlush = true
			w.flush = append(w.flush, a.uc.c)
		}
		// The answer's frames took a copy: its memory goes back (grown,
		// when it grew within bounds).
		if c := cap(a.out); c > cap(*a.buf) && c <= maxAnswerBuf {
			*a.buf = a.out[:0]
		}
		answerBufs.Put(a.buf)
		*a = waitedAnswer{}
	}
	w.spare = batch[:0]
	for i, c := range w.flush {
		c.toFlush = false
		c.flush()
		w.flush[i] = nil
	}
	w.flush = w.flush[:0]
}
