// k6/net/grpc (to be filled in).
export class Client {
  constructor() { throw new Error('k6/net/grpc is not supported yet'); }
}
export default { Client };
