/** No batch has this id. */
export class BatchNotFoundError extends Error {
  readonly code = 'batch_not_found';

  constructor(readonly batchId: string) {
    super(`no batch with id ${batchId}`);
    this.name = 'BatchNotFoundError';
  }
}

/** The batch has ended (or failed validation): there is nothing to cancel. */
export class BatchNotCancellableError extends Error {
  readonly code = 'batch_not_cancellable';

  constructor(
    readonly batchId: string,
    readonly status: string,
  ) {
    super(`batch ${batchId} is ${status}: only a validating, in_progress or finalizing batch can be cancelled`);
    this.name = 'BatchNotCancellableError';
  }
}
