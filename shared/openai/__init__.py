"""The OpenAI-compatible front door: OpenAI's request and response shapes mapped onto gpuq jobs.

- :mod:`~shared.openai.requests`: chat, completion and embedding requests → a job's body (what is not
  supported is a 400 naming the parameter);
- :mod:`~shared.openai.objects`: a finished (or streaming) job → OpenAI's response objects;
- :mod:`~shared.openai.attach`: submit, or re-attach a retried request to the job it already started;
- :mod:`~shared.openai.waiting`: follow a job until it is done, with the status it waits for;
- :mod:`~shared.openai.files` and :mod:`~shared.openai.batches`: the Batch API, each line a job.
"""
