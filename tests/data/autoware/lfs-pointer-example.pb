version https://git-lfs.github.com/spec/v1
oid sha256:8e9d39f908ae752c824a719e99527b19e78524b045fd91f8196dac57946d6391
size 44958650
