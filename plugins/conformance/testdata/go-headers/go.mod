module github.com/sluicehq/sluice/plugins/conformance/testdata/go-headers

go 1.26

require github.com/sluicehq/sluice/plugins/sdk/go v0.0.0

replace github.com/sluicehq/sluice/plugins/sdk/go => ../../../sdk/go
