// Package glob matches the path globs of mmiotrace's command lines
// (record --map, decode and report --map): path.Match syntax per path
// element, plus "**" for any number of whole elements.
package glob
