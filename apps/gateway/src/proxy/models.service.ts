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

/** Anthropic's ModelInfo. */
interface AnthropicModel {
  type: 'model';
  id: string;
  display_name: string;
  created_at: string;
}

/** Anthropic's list page (one page: has_more false). */
interface AnthropicModelList {
  data: AnthropicModel[];
  has_more: false;
  first_id: string | null;
  last_id: string | null;
}

/**
 * `GET /v1/models` and `GET /v1/models/{model}`: the models this key may use, on any API, in OpenAI's shapes (or,
 * for Anthropic's clients, those it may use with Messages, in Anthropic's).
 */
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

  /**
   * `GET /v1/models` as Anthropic's clients call it (`anthropic-version` sent): the models this key may use with
   * the Messages API (a model whose `apis:` leave out messages is not listed), in Anthropic's shape.
   */
  listAnthropic(key: AuthedKey): AnthropicModelList {
    const data = this.catalog
      .modelIds()
      .filter((id) => this.messagesModel(key, id))
      .map((id) => this.anthropicObject(id));
    return { data, has_more: false, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null };
  }

  retrieveAnthropic(key: AuthedKey, id: string): AnthropicModel {
    if (!this.messagesModel(key, id)) throw modelNotFound(id);
    return this.anthropicObject(id);
  }

  private messagesModel(key: AuthedKey, id: string): boolean {
    return this.catalog.routesFor(id, 'messages') !== undefined && (key.allowedModels === null || key.allowedModels.has(id));
  }

  private anthropicObject(id: string): AnthropicModel {
    return { type: 'model', id, display_name: id, created_at: new Date(this.created * 1000).toISOString() };
  }

  private object(id: string): ModelObject {
    return { id, object: 'model', created: this.created, owned_by: 'spotinference' };
  }
}
