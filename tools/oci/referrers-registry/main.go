// referrers-registry is go-containerregistry's in-memory registry (the one cmd/registry serves) with
// the OCI 1.1 referrers API switched on, listening on 127.0.0.1 only. cmd/registry has no flag for
// the API, and the tests need a registry with it and one without (the tag fallbacks).
// Built by hack/build-oci-bins.sh, pinned in go.mod/go.sum.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	port := flag.Int("port", 0, "port on 127.0.0.1 (0: a free one)")
	flag.Parse()
	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("serving on port %d", listener.Addr().(*net.TCPAddr).Port)
	server := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler:           registry.New(registry.WithReferrersSupport(true)),
	}
	log.Fatal(server.Serve(listener))
}
