package report

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// page is the HTML page: inline CSS and JavaScript that draw the charts
// on canvases from the JSON data placed in it. It loads nothing from the
// network.
//
//go:embed page.html
var page string

// pageData is what the page's script draws. Times are seconds from the
// start of the log.
type pageData struct {
	Start    float64     `json:"start"` // log time of the start, s
	Span     float64     `json:"span"`
	Buckets  int         `json:"buckets"`
	Bucket   float64     `json:"bucket"` // s per bucket
	Accesses uint64      `json:"accesses"`
	Marks    []markJSON  `json:"marks"`
	Heat     []heatJSON  `json:"heat"`
	Values   []valueJSON `json:"values"`
	Threads  seriesJSON  `json:"threads"`
	Procs    seriesJSON  `json:"procs"` // empty when the log has no PROC line
	Watches  seriesJSON  `json:"watches"`
	Events   seriesJSON  `json:"events"`
}

type markJSON struct {
	T    float64 `json:"t"`
	Text string  `json:"text"`
}

type heatJSON struct {
	Title  string     `json:"title"`
	Rows   []string   `json:"rows"`
	Counts [][]uint32 `json:"counts"`
	Writes [][]uint32 `json:"writes"`
	Sys    [][]uint32 `json:"sys"` // the kernel's accesses (SYS records) meeting the row
}

type valueJSON struct {
	Title  string       `json:"title"`
	Lo     float64      `json:"lo"`
	Hi     float64      `json:"hi"`
	LoText string       `json:"loText"`
	HiText string       `json:"hiText"`
	Points [][3]float64 `json:"points,omitempty"` // time, value, 1 for a write
	Bins   [][4]float64 `json:"bins,omitempty"`   // bucket, min, max, last
}

type seriesJSON struct {
	Labels []string   `json:"labels"`
	Counts [][]uint32 `json:"counts"`
}

// WriteHTML writes the report as one self-contained HTML page: the charts
// of the second pass, then the text summary.
func WriteHTML(w io.Writer, title string, c *Charts, opt TextOptions) error {
	var text bytes.Buffer
	if err := WriteText(&text, c.s, opt); err != nil {
		return err
	}
	data, err := json.Marshal(c.data())
	if err != nil {
		return fmt.Errorf("report data: %w", err)
	}
	// encoding/json escapes <, > and &, so the data cannot end the script
	// element it sits in.
	out := strings.NewReplacer(
		"{{TITLE}}", html.EscapeString(title),
		"{{SUMMARY}}", html.EscapeString(text.String()),
		"{{DATA}}", string(data),
	).Replace(page)
	_, err = io.WriteString(w, out)
	return err
}

func (c *Charts) rel(t int64) float64 { return float64(t-c.start) / 1e9 }

func (c *Charts) data() pageData {
	s := c.s
	d := pageData{
		Start:    float64(c.start) / 1e9,
		Span:     float64(c.end-c.start) / 1e9,
		Buckets:  c.lim.Buckets,
		Bucket:   float64(c.span) / 1e9,
		Accesses: s.Accesses(),
		Marks:    []markJSON{},
		Heat:     []heatJSON{},
		Values:   []valueJSON{},
	}
	for _, m := range s.Marks {
		d.Marks = append(d.Marks, markJSON{c.rel(m.Time), m.Text})
	}
	for _, h := range c.heats {
		d.Heat = append(d.Heat, heatJSON{
			Title:  fmt.Sprintf("map %s: %s (%s)%s", mapTitle(h.m), count(h.m.Accesses(), "access"), rw(h.m.Reads, h.m.Writes), sysText(h.m)),
			Rows:   h.rows,
			Counts: h.counts,
			Writes: h.writes,
			Sys:    h.sys,
		})
	}
	for _, v := range c.valueL {
		name := offsetText(v.r)
		if v.r.Name != "" {
			name += " " + v.r.Name
		}
		n, more := v.r.Values()
		j := valueJSON{Title: fmt.Sprintf("map %s, register %s: %s (%s), %s", mapTitle(v.m), name,
			count(v.r.Reads+v.r.Writes, "access"), rw(v.r.Reads, v.r.Writes), countMore(n, more, "value"))}
		lo, hi := math.Inf(1), math.Inf(-1)
		if v.bins == nil {
			for _, p := range v.points {
				w := 0.0
				if p.write {
					w = 1
				}
				j.Points = append(j.Points, [3]float64{c.rel(p.t), p.v, w})
				lo, hi = math.Min(lo, p.v), math.Max(hi, p.v)
			}
		} else {
			for b, x := range v.bins {
				if x.n > 0 {
					j.Bins = append(j.Bins, [4]float64{float64(b), x.min, x.max, x.val})
					lo, hi = math.Min(lo, x.min), math.Max(hi, x.max)
				}
			}
		}
		if lo > hi {
			lo, hi = 0, 0
		}
		j.Lo, j.Hi = lo, hi
		j.LoText, j.HiText = fmt.Sprintf("%#x", uint64(lo)), fmt.Sprintf("%#x", uint64(hi))
		d.Values = append(d.Values, j)
	}
	d.Threads = seriesOf(c.threads, "other threads")
	d.Procs = seriesJSON{Labels: []string{}, Counts: [][]uint32{}}
	if c.procs != nil {
		d.Procs = seriesOf(c.procs, "other processes")
	}
	d.Watches = seriesOf(c.watches, "other watches")
	d.Events = seriesOf(c.events, "other events")
	return d
}

func seriesOf[K comparable](s *seriesSet[K], rest string) seriesJSON {
	j := seriesJSON{Labels: append([]string(nil), s.labels...), Counts: s.counts[:len(s.keys)]}
	if s.rest {
		j.Labels = append(j.Labels, rest)
		j.Counts = s.counts
	}
	if j.Labels == nil {
		j.Labels, j.Counts = []string{}, [][]uint32{}
	}
	return j
}
