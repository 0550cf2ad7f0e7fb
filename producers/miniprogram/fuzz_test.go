package miniprogram_test

import (
	"testing"

	"github.com/omnisync/omnisync/producers/internal/wxpush"
	"github.com/omnisync/omnisync/producers/internal/wxpush/wxpushtest"
)

func FuzzParse(f *testing.F) {
	var seeds []string
	for _, tc := range parseCases {
		seeds = append(seeds, tc.json)
	}
	for _, tc := range badCases {
		seeds = append(seeds, tc.json)
	}
	wxpushtest.FuzzParse(f, newChannel(wxpush.AccountID(testAccount)), "/ingest/miniprogram", seeds...)
}
