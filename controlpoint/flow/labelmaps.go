package flow

import "sync"

// KeepLabels is the size past which a label map is not kept for another
// flow (FreeLabels), nor kept by a connection that reuses its own: one
// request of many labels should not keep its map's size.
const KeepLabels = 64

// labelMaps holds label maps between flows: a checker keeps no part of a
// request after its check (client.Checker's contract), so a map is
// cleared and used again. A map made for every flow was the largest
// allocation of a check at the check API and at the gateway.
var labelMaps = sync.Pool{New: func() any { return make(map[string]string, 32) }}

// NewLabels returns an empty label map; give it back with FreeLabels once
// the check that reads it is done.
func NewLabels() map[string]string { return labelMaps.Get().(map[string]string) }

// FreeLabels empties labels and keeps it for another flow, unless it is
// nil or grew past KeepLabels; labels must not be used afterwards.
func FreeLabels(labels map[string]string) {
	if labels == nil || len(labels) > KeepLabels {
		return
	}
	clear(labels)
	labelMaps.Put(labels)
}
