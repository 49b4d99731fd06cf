// Command goprog is the Go fixture of the symbols tests: package variables
// with known values, kept alive until stdin closes.
package main

import (
	"fmt"
	"io"
	"os"
)

var counter uint64 = 0xfeedface12345678

var table = [4]uint32{0xa1, 0xb2, 0xc3, 0xd4}

func main() {
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	counter += uint64(table[2])
	fmt.Println(counter)
}
