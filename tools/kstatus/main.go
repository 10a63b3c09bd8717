// kstatus-check prints what sigs.k8s.io/cli-utils' kstatus (the library Flux and `kubectl wait`
// style tooling use) computes for Kubernetes objects: one JSON line per object read from stdin
// (a JSON object, or a JSON list under "items"), {"status": "...", "message": "..."}.
// Built by hack/build-kstatus.sh, pinned in go.mod/go.sum; the tests compare it with our conditions.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	data, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<20))
	if err != nil {
		fail(err)
	}
	var doc map[string]interface{}
	// The apimachinery decoder keeps whole numbers as int64, as the API server's objects have them.
	if err := k8sjson.Unmarshal(data, &doc); err != nil {
		fail(err)
	}
	objects := []map[string]interface{}{doc}
	if items, ok := doc["items"].([]interface{}); ok {
		objects = objects[:0]
		for _, item := range items {
			if obj, ok := item.(map[string]interface{}); ok {
				objects = append(objects, obj)
			}
		}
	}
	out := json.NewEncoder(os.Stdout)
	for _, obj := range objects {
		u := &unstructured.Unstructured{Object: obj}
		computed, err := status.Compute(u)
		if err != nil {
			fail(err)
		}
		if err := out.Encode(result{Name: u.GetName(), Status: computed.Status.String(), Message: computed.Message}); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus-check:", err)
	os.Exit(1)
}
