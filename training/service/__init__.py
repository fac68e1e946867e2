"""The Training gRPC service: validates submissions, stores them in job directories, runs each as a
Ray Job (`training.job`), and reports progress from the job's progress file and Ray's job status."""
