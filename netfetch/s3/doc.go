// Package s3 keeps thaw's chunk store in an S3-compatible bucket (AWS S3,
// Ceph RGW, SeaweedFS, MinIO, versitygw), in the layout of thaw serve: a
// bundle object at s3://BUCKET/PREFIX/NAME and the chunks it names at
// s3://BUCKET/PREFIX/chunks/ab/SUM, shared by every bundle of that prefix.
//
// It holds:
//
//   - [Parse]: s3:// URLs, and [Object]'s keys for a bundle's chunks;
//   - [FromEnv]: the endpoint, region and credentials from the usual places
//     (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
//     AWS_SECRET_ACCESS_KEY, ~/.aws/credentials);
//   - [Client]: listing the chunks a prefix holds, PUT, DELETE and
//     listing through minio-go, and GET URLs presigned locally (no
//     request);
//   - [Client.SignPut]: a PUT signed with SigV4 for a caller that writes
//     it on a connection of its own (capture, while the machine is frozen
//     and no other thread runs);
//   - the presigned list ([List]): one object holding a presigned GET URL
//     for a bundle object and for each of its chunks, which the restore
//     agent, holding no credential, takes as thaw.image=.
//
// Addressing is path-style (ENDPOINT/BUCKET/KEY), which every
// self-hosted store takes and AWS S3 still serves.
package s3
