// Type-checked with the client (tsc --noEmit): a stale schema breaks these calls.
import { createRefitClient, type Problem } from "./src/index";

export async function newestOrders(token: string): Promise<string[] | Problem> {
  const api = createRefitClient({ baseUrl: "http://127.0.0.1:8000", token: () => token });
  const { data, error } = await api.GET("/api/orders", { params: { query: { limit: 10 } } });
  if (error) return error as Problem;
  return data.items.map((order) => order.order_number);
}
