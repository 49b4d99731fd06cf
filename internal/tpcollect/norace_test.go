//go:build !race

package tpcollect_test

var buildFlags []string
