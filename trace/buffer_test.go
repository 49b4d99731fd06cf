package trace

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// blockingSink never returns from Write until released.
type blockingSink struct{ release chan struct{} }

func (s *blockingSink) Write([]Record) error { <-s.release; return nil }

// TestBufferRelease: a writer stuck (a reader that does not read) holds
// Append while the buffer is full, until Release.
func TestBufferRelease(t *testing.T) {
	sink := &blockingSink{release: make(chan struct{})}
	b := NewBuffer(sink, nil, 4)
	defer func() { close(sink.release); b.Close() }()
	// The writer takes a first batch and blocks on it; then the buffer
	// fills up.
	b.Append(&Record{Kind: KindRead})
	time.Sleep(2 * FlushInterval)
	for i := 0; i < 4; i++ {
		b.Append(&Record{Kind: KindRead})
	}
	done := make(chan error, 1)
	go func() { done <- b.Append(&Record{Kind: KindWrite}) }()
	select {
	case <-done:
		t.Fatal("Append returned with the buffer full and the writer stuck")
	case <-time.After(3 * FlushInterval):
	}
	b.Release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Append after Release: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Append still waits after Release")
	}
}

type failingSink struct{ err error }

func (s failingSink) Write([]Record) error { return s.err }

// TestBufferOnError: the first write error reaches OnError once, and
// Append and Err return it.
func TestBufferOnError(t *testing.T) {
	want := errors.New("disk full")
	var calls atomic.Int32
	got := make(chan error, 4)
	b := NewBuffer(failingSink{want}, nil, 4, OnError(func(err error) {
		calls.Add(1)
		got <- err
	}))
	b.Append(&Record{Kind: KindRead})
	select {
	case err := <-got:
		if err != want {
			t.Fatalf("OnError got %v, want %v", err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnError not called")
	}
	if err := b.Append(&Record{Kind: KindRead}); err != want {
		t.Errorf("Append after the failure: %v, want %v", err, want)
	}
	b.Append(&Record{Kind: KindRead})
	if err := b.Close(); err != want {
		t.Errorf("Close: %v, want %v", err, want)
	}
	if err := b.Err(); err != want {
		t.Errorf("Err: %v, want %v", err, want)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("OnError called %d times, want 1", n)
	}
}
