import { Inject, Injectable } from '@nestjs/common';
import { modelNotFound } from '@spot/contract';
import { ModelCatalog } from '@spot/tiers';
import type { AuthedKey } from '../auth/authed-key';

interface ModelObject {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

/** `GET /v1/models` and `GET /v1/models/{model}`: the models this key may use, in OpenAI's shapes. */
@Injectable()
export class ModelsService {
  private readonly created = Math.floor(Date.now() / 1000);

  constructor(@Inject(ModelCatalog) private readonly catalog: ModelCatalog) {}

  list(key: AuthedKey): { object: 'list'; data: ModelObject[] } {
    const data = this.catalog
      .modelIds()
      .filter((id) => key.allowedModels === null || key.allowedModels.has(id))
      .map((id) => this.object(id));
    return { object: 'list', data };
  }

  retrieve(key: AuthedKey, id: string): ModelObject {
    if (this.catalog.routesFor(id) === undefined || (key.allowedModels !== null && !key.allowedModels.has(id))) {
      throw modelNotFound(id);
    }
    return this.object(id);
  }

  private object(id: string): ModelObject {
    return { id, object: 'model', created: this.created, owned_by: 'spotinference' };
  }
}
