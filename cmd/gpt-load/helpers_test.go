package main

import "gpt-load/domain"

func benchGroup(name string) domain.GroupInput {
	s := func(v string) *string { return &v }
	return domain.GroupInput{
		Name: s(name), ChannelType: s("openai"), TestModel: s("gpt-4.1-nano"),
		Upstreams: []byte(`[{"url":"https://api.example.com","weight":1}]`),
	}
}
