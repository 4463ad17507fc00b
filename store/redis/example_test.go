package redis_test

import (
	"context"
	"log"

	goredis "github.com/redis/go-redis/v9"

	"github.com/dynkey/dynkey/store/redis"
)

// Open a store on a Redis Cluster by URL: any of its nodes, comma-separated.
func ExampleOpen() {
	ctx := context.Background()
	s, err := redis.Open(ctx, "redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000?prefix=myapp:")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
}

// Use a client you configured yourself: standalone, Sentinel or cluster.
func ExampleNew() {
	c := goredis.NewFailoverClient(&goredis.FailoverOptions{
		MasterName:    "dynkey",
		SentinelAddrs: []string{"10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"},
	})
	defer c.Close()
	s := redis.New(c, redis.Options{Prefix: "myapp:"})
	defer s.Close() // leaves c open: the caller owns it
}
