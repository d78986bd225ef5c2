// Command standin stands in for the manager in hack/image's tests: a static
// binary that builds in a second, where cross-compiling the manager twice
// takes minutes. `make image` checks the real binaries with the same code.
package main

func main() {}
