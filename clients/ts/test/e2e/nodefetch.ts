// A fetch over node:http that, unlike the WHATWG fetch, sends a body on GET.
// It shows that the body transport works for GET against the Go server
// until the header transport (issue 8) makes this unnecessary.

import http from "node:http";

export const nodeHttpFetch: typeof fetch = async (input, init) => {
  const url = new URL(String(input));
  const body = init?.body ? new Uint8Array(await new Response(init.body).arrayBuffer()) : undefined;
  const headers: Record<string, string> = {};
  new Headers(init?.headers).forEach((v, k) => (headers[k] = v));
  if (body) headers["content-length"] = String(body.length);
  return new Promise<Response>((resolve, reject) => {
    const req = http.request(url, { method: init?.method ?? "GET", headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === "string") h.set(k, v);
        const status = res.statusCode ?? 0;
        const nullBody = status === 204 || status === 304;
        resolve(new Response(nullBody ? null : Buffer.concat(chunks), { status, headers: h }));
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    if (body) req.write(body);
    req.end();
  });
};
