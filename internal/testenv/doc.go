// Package testenv holds the helpers that every mmiotrace test shares: skipping
// only when the machine truly lacks a feature, and building C and Go fixture
// programs.
//
// A skip is a failure when MMIOTRACE_REQUIRE_ALL=1 is set, as .ci/run does,
// unless a probe of package feature proved that the host lacks the feature
// (SkipIfNotSupported): a skip for any other reason means a broken test.
package testenv
