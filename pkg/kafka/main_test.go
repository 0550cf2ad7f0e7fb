package kafka_test

import (
	"os"
	"testing"

	"github.com/omnisync/omnisync/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
