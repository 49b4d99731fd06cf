package tracepoint_test

import (
	"slices"
	"strconv"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
)

func fmtInt(i int64) string { return strconv.FormatInt(i, 10) }

func equalFields(a, b []tpcollect.Field) bool { return slices.Equal(a, b) }

func fv(name, value string) tpcollect.Field { return tpcollect.Field{Name: name, Value: value} }
