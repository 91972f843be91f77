module github.com/sluicehq/sluice/plugins/sdk/go

go 1.26
